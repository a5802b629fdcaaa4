# The OverSkill app's storage code, as r2-hybrid-storage-plan.md writes it (sections 1.2, 1.3 and 2.2), on
# ActiveRecord 6.1 and aws-sdk-s3. Only what the plan leaves out is filled in: the upload and download calls
# (aws-sdk-s3), and the Rails pieces the models touch outside a Rails app (Rails.cache, Rails.logger, the
# Cloudflare client). Partial writes are ActiveRecord's default, as in every Rails app: a save writes only
# the attributes that changed against the row as it was loaded.
require 'json'
require 'digest'
require 'zlib'
require 'logger'
require 'active_record'
require 'active_support/core_ext/numeric/bytes'
require 'aws-sdk-s3'

module Rails
  # The plan caches R2 reads for minutes; a test reads right after each step, so the cache always misses.
  class NullCache
    def fetch(_key, **_options)
      yield
    end
  end

  def self.cache
    @cache ||= NullCache.new
  end

  def self.logger
    @logger ||= Logger.new($stderr, level: Logger::WARN)
  end
end

module Deployment
  # The plan builds one "as a utility instance" and never calls it in the code shown.
  class CloudflareApiClient
    def initialize(_app); end
  end
end

module Storage; end

class ApplicationRecord < ActiveRecord::Base
  self.abstract_class = true
end

class App < ApplicationRecord
  has_many :app_files
  has_many :app_versions
end

# app/services/storage/r2_file_storage_service.rb
class Storage::R2FileStorageService
  def initialize(bucket_name = ENV['CLOUDFLARE_R2_BUCKET_DB_FILES'])
    @bucket_name = bucket_name
    @client = Deployment::CloudflareApiClient.new(nil) # Utility instance
  end

  def store_file_content(app_id, file_path, content)
    object_key = generate_file_key(app_id, file_path)
    result = upload_to_r2(object_key, content)

    {
      success: true,
      object_key: object_key,
      size: content.bytesize,
      checksum: Digest::SHA256.hexdigest(content),
      cdn_url: result[:cdn_url]
    }
  end

  def retrieve_file_content(object_key)
    # Implement R2 GET request
    download_from_r2(object_key)
  end

  def store_version_snapshot(app_id, version_id, files_hash)
    object_key = "apps/#{app_id}/snapshots/#{version_id}/snapshot.json"
    content = JSON.pretty_generate(files_hash)
    upload_to_r2(object_key, content)
  end

  private

  def generate_file_key(app_id, file_path)
    "apps/#{app_id}/files/#{file_path.gsub(/^\//, '')}"
  end

  # Filled in: a plain PutObject, as the plan's service would send it (no conditions, no metadata).
  def upload_to_r2(object_key, content)
    s3.put_object(bucket: @bucket_name, key: object_key, body: content, content_type: 'text/plain')
    { object_key: object_key, cdn_url: nil }
  end

  # Filled in: a GetObject, decoded the way the tool's README asks of the app's read path (metadata
  # `encoding: gzip` marks an object stored compressed).
  def download_from_r2(object_key)
    object = s3.get_object(bucket: @bucket_name, key: object_key)
    bytes = object.body.read
    bytes = Zlib.gunzip(bytes) if object.metadata['encoding'] == 'gzip' && object.content_encoding.to_s !~ /gzip/
    bytes.force_encoding(Encoding::UTF_8)
  end

  def s3
    @s3 ||= Aws::S3::Client.new(
      endpoint: ENV.fetch('R2_ENDPOINT'),
      access_key_id: ENV.fetch('R2_ACCESS_KEY_ID'),
      secret_access_key: ENV.fetch('R2_SECRET_ACCESS_KEY'),
      region: 'auto',
      force_path_style: true
    )
  end
end

# app/models/app_file.rb (enhanced)
class AppFile < ApplicationRecord
  belongs_to :app

  # Storage location tracking
  enum storage_location: { database: 'database', r2: 'r2', hybrid: 'hybrid' }

  # Content management with R2 fallback
  def content
    case storage_location
    when 'database', 'hybrid'
      super # Use database content
    when 'r2'
      fetch_from_r2
    else
      super || fetch_from_r2 # Fallback strategy
    end
  end

  def content=(new_content)
    strategy = determine_storage_strategy(new_content)

    case strategy
    when :database_only
      super(new_content)
      self.storage_location = 'database'
    when :r2_only
      store_in_r2(new_content)
      super(nil) # Clear database content
      self.storage_location = 'r2'
    when :hybrid
      super(new_content) # Store in database
      store_in_r2(new_content) # Also store in R2
      self.storage_location = 'hybrid'
    end

    self.content_hash = Digest::SHA256.hexdigest(new_content)
    self.size_bytes = new_content.bytesize
  end

  private

  def determine_storage_strategy(content)
    size = content.bytesize

    case size
    when 0..1.kilobyte
      :database_only
    when 1.kilobyte..10.kilobytes
      :hybrid # Safety during migration
    else
      :r2_only
    end
  end

  def fetch_from_r2
    return nil if r2_object_key.blank?

    Rails.cache.fetch("r2_content_#{r2_object_key}", expires_in: 5.minutes) do
      Storage::R2FileStorageService.new.retrieve_file_content(r2_object_key)
    end
  rescue => e
    Rails.logger.error "Failed to fetch R2 content for #{r2_object_key}: #{e.message}"
    nil
  end

  def store_in_r2(content)
    service = Storage::R2FileStorageService.new
    result = service.store_file_content(app.id, path, content)
    self.r2_object_key = result[:object_key]
    result
  end
end

# app/models/app_version.rb (enhanced)
class AppVersion < ApplicationRecord
  belongs_to :app

  enum storage_strategy: { database: 'database', r2: 'r2', hybrid: 'hybrid' }

  def files_snapshot
    case storage_strategy
    when 'database', 'hybrid'
      super
    when 'r2'
      fetch_snapshot_from_r2
    else
      super || fetch_snapshot_from_r2
    end
  end

  def migrate_to_r2!
    return if storage_strategy == 'r2'

    if files_snapshot.present?
      service = Storage::R2FileStorageService.new
      result = service.store_version_snapshot(app.id, id, files_snapshot)

      update!(
        storage_strategy: 'hybrid',
        r2_snapshot_key: result[:object_key]
      )
    end
  end

  private

  def fetch_snapshot_from_r2
    return nil if r2_snapshot_key.blank?

    Rails.cache.fetch("r2_snapshot_#{r2_snapshot_key}", expires_in: 10.minutes) do
      Storage::R2FileStorageService.new.retrieve_file_content(r2_snapshot_key)
    end
  rescue => e
    Rails.logger.error "Failed to fetch R2 snapshot #{r2_snapshot_key}: #{e.message}"
    nil
  end
end
