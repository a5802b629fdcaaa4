# Plays the OverSkill app with the plan's own models (plan_models.rb), one JSON command per line on stdin,
# one JSON answer per line on stdout, so a test decides exactly when the app loads a row, assigns its
# content (which uploads) and saves it.
#   {"op":"load","slot":"a","id":7}            AppFile.find(7), kept in slot "a"
#   {"op":"assign","slot":"a","content":"..."} slot.content = ... (the plan's content=, upload included)
#   {"op":"save","slot":"a"}                   slot.save!  (answers {"error": class, "message": ...} on failure)
#   {"op":"write","id":7,"content":"..."}      find, content=, save! at once
#   {"op":"read","id":7}                       AppFile.find(7).content, freshly loaded
#   {"op":"read_snapshot","id":3}              AppVersion.find(3).files_snapshot
#   {"op":"migrate_version","id":3}            AppVersion.find(3).migrate_to_r2!
#   {"op":"race","ids":[...],"seconds":4,"seed":1,"gap_ms":40,"min_rows":11}
#       for that long, and on until min_rows rows have been saved (ten times as long at most): find a random
#       row, wait up to gap_ms (a request's work), content=, save!; answers the counts and the hash of the last
#       content saved to each row
# Environment: DATABASE_URL, R2_ENDPOINT, R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY, CLOUDFLARE_R2_BUCKET_DB_FILES.
require_relative 'plan_models'

ActiveRecord::Base.establish_connection(ENV.fetch('DATABASE_URL'))
$stdout.sync = true
slots = {}

def described(file)
  { id: file.id.to_s, storage_location: file.storage_location, r2_object_key: file.r2_object_key, content_hash: file.content_hash }
end

def digest(text)
  text.nil? ? nil : Digest::SHA256.hexdigest(text)
end

$stdin.each_line do |line|
  command = JSON.parse(line)
  answer =
    begin
      case command['op']
      when 'load'
        slots[command['slot']] = AppFile.find(command['id'])
        described(slots[command['slot']])
      when 'assign'
        slots.fetch(command['slot']).content = command['content']
        { assigned: true }
      when 'save'
        file = slots.fetch(command['slot'])
        changed = file.changed
        file.save!
        { saved: true, changed: changed }
      when 'write'
        file = AppFile.find(command['id'])
        file.content = command['content']
        file.save!
        described(file)
      when 'read'
        content = AppFile.find(command['id']).content
        { content: content, sha256: digest(content) }
      when 'read_snapshot'
        snapshot = AppVersion.find(command['id']).files_snapshot
        { content: snapshot, sha256: digest(snapshot) }
      when 'migrate_version'
        AppVersion.find(command['id']).migrate_to_r2!
        { migrated: true }
      when 'race'
        random = Random.new(command['seed'])
        ids = command['ids']
        started = Time.now
        deadline = started + command['seconds']
        give_up = started + command['seconds'] * 10
        min_rows = command.fetch('min_rows', 0)
        last = {}
        counts = Hash.new(0)
        n = 0
        while Time.now < deadline || (last.size < min_rows && Time.now < give_up)
          id = ids[random.rand(ids.length)]
          file = AppFile.find(id)
          sleep(random.rand * command.fetch('gap_ms', 40) / 1000.0)
          size = [300 + random.rand(700), 1_100 + random.rand(9_000), 10_300 + random.rand(20_000)][random.rand(3)]
          content = "race write #{n += 1} to #{id} ".*(size / 20 + 1)[0, size]
          begin
            file.content = content
            file.save!
            last[id.to_s] = Digest::SHA256.hexdigest(content)
            counts[file.storage_location] += 1
          rescue StandardError => e
            counts["raised #{e.class.name}"] += 1
          end
        end
        { counts: counts, last: last, writes: n }
      else
        { error: 'ArgumentError', message: "unknown op #{command['op']}" }
      end
    rescue StandardError => e
      { error: e.class.name, message: e.message }
    end
  $stdout.puts(JSON.generate(answer))
end
