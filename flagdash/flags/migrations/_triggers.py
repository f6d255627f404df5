"""SQL of the PostgreSQL trigger that keeps saved versions immutable (shared by migrations)."""

_FUNCTION = """
CREATE OR REPLACE FUNCTION flagdash_version_immutable() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'configuration versions are immutable: DELETE refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.document IS DISTINCT FROM OLD.document
       OR NEW.sha256 IS DISTINCT FROM OLD.sha256
       OR NEW.number IS DISTINCT FROM OLD.number
       OR NEW.environment_id IS DISTINCT FROM OLD.environment_id
       OR NEW.message IS DISTINCT FROM OLD.message
       OR NEW.created_at IS DISTINCT FROM OLD.created_at{extra} THEN
        RAISE EXCEPTION 'configuration versions are immutable: UPDATE refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""

VERSION_IMMUTABLE = _FUNCTION.format(extra="")
VERSION_IMMUTABLE_WITH_DIGESTS = _FUNCTION.format(
    extra="\n       OR NEW.flag_digests IS DISTINCT FROM OLD.flag_digests"
)


def run(schema_editor, sql):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(sql)  # no parameters: '%' in the SQL is literal
