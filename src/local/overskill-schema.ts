/**
 * OverSkill's own tables as the Rails app creates them (before this tool's Phase 1 columns). Used by the
 * demo, the tests and the benchmark to stand up a database that looks like production.
 */
export const OVERSKILL_TABLES_SQL = `
CREATE TABLE IF NOT EXISTS apps (
  id bigserial PRIMARY KEY,
  name character varying NOT NULL,
  created_at timestamp(6) NOT NULL DEFAULT now(),
  updated_at timestamp(6) NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS app_files (
  id bigserial PRIMARY KEY,
  app_id bigint NOT NULL REFERENCES apps(id),
  path character varying NOT NULL,
  content text NOT NULL,
  file_type character varying,
  size_bytes integer,
  checksum character varying,
  is_entry_point boolean DEFAULT false,
  created_at timestamp(6) NOT NULL DEFAULT now(),
  updated_at timestamp(6) NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS index_app_files_on_app_id_and_path ON app_files (app_id, path);
CREATE TABLE IF NOT EXISTS app_versions (
  id bigserial PRIMARY KEY,
  app_id bigint NOT NULL REFERENCES apps(id),
  version_number character varying NOT NULL,
  changelog text,
  files_snapshot text,
  environment character varying,
  created_at timestamp(6) NOT NULL DEFAULT now(),
  updated_at timestamp(6) NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS index_app_versions_on_app_id ON app_versions (app_id);
CREATE TABLE IF NOT EXISTS app_version_files (
  id bigserial PRIMARY KEY,
  app_version_id bigint NOT NULL REFERENCES app_versions(id),
  app_file_id bigint REFERENCES app_files(id),
  action character varying NOT NULL,
  content text,
  created_at timestamp(6) NOT NULL DEFAULT now(),
  updated_at timestamp(6) NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS index_app_version_files_on_app_version_id ON app_version_files (app_version_id);
CREATE INDEX IF NOT EXISTS index_app_version_files_on_app_file_id ON app_version_files (app_file_id);
`;
