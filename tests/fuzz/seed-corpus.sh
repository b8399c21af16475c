#!/usr/bin/env bash
# Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/) from the test fixtures, the
# example project and the values the tests use. Run from anywhere; files are replaced, and files
# not written here (inputs that once failed: regression-*) are left alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=tests/fuzz/corpus

# seed TARGET NAME [PARTS...]: the parts joined by NUL bytes (printf %s: no escapes interpreted).
seed() {
    local target=$1 name=$2
    shift 2
    mkdir -p "$out/$target"
    local first=true
    for part in "$@"; do
        $first || printf '\0'
        printf '%s' "$part"
        first=false
    done >"$out/$target/$name"
}

# A versions directory as one input: its revision files, NUL-separated (sorted, at most 32).
versions() {
    local target=$1 name=$2 dir=$3
    mkdir -p "$out/$target"
    local first=true
    while IFS= read -r f; do
        $first || printf '\0'
        cat "$f"
        first=false
    done < <(find "$dir" -name '*.py' ! -name '__init__.py' | sort | head -n 32) >"$out/$target/$name"
}

# ---- alembic_revision: every fixture project, and single files in each form
for d in tests/fixtures/alembic/*/; do
    versions alembic_revision "project-$(basename "$d")" "$d/versions"
done
versions alembic_revision project-alembic_failing tests/fixtures/alembic_failing/versions
versions alembic_revision project-docker-example docker/example/migrations/versions
for f in tests/fixtures/alembic/annotated/versions/*.py tests/fixtures/alembic/merge/versions/*.py; do
    mkdir -p "$out/alembic_revision"
    cp "$f" "$out/alembic_revision/file-$(basename "$(dirname "$(dirname "$f")")")-$(basename "$f" .py)"
done
seed alembic_revision file-multiline-list $'revision = \'m3\'\ndown_revision = [\n    \'m2a\',  # first\n    "m2b",\n]\nbranch_labels = (\'feature\',)\ndepends_on = \'b2\'\n'
seed alembic_revision file-docstring $'"""doc\n\nrevision = \'fake\'\n"""\nrevision = r\'real\'  # trailing\ndown_revision = None \\\n\n'
seed alembic_revision file-not-literal $'REV = \'1\'\nrevision = REV\n'
seed alembic_revision file-constant-and-tuple $'REV_X = \'1a2b\'\nrevision = REV_X; down_revision = \'a\', \'b\'\nbranch_labels = (cli.EXPAND_BRANCH,)\ndepends_on = (\'x\' \'y\',)\n'
seed alembic_revision file-conditional $'if x:\n    revision = \'a\'\nelse:\n    revision = \'b\'\ndown_revision = None\n'

# ---- alembic_ini: every fixture's ini, and the settings Alembic documents
mkdir -p "$out/alembic_ini"
for d in tests/fixtures/alembic/*/; do
    cp "$d/alembic.ini" "$out/alembic_ini/fixture-$(basename "$d")"
done
cp tests/fixtures/alembic_failing/alembic.ini "$out/alembic_ini/fixture-alembic_failing"
cp docker/example/alembic.ini "$out/alembic_ini/docker-example"
seed alembic_ini separator-os $'[alembic]\nscript_location = migrations\nversion_path_separator = os\nversion_locations = %(here)s/a:%(here)s/b\nrecursive_version_locations = true\n'
seed alembic_ini separator-newline $'[DEFAULT]\nbase = %(here)s/db\n\n[alembic]\nscript_location: %(base)s\nversion_path_separator = newline\nversion_locations =\n    %(base)s/one\n    two\n; comment\n# comment\n'
seed alembic_ini legacy-separator $'[alembic]\nscript_location = /abs/migrations\nversion_locations = a, b c\nsqlalchemy.url = postgresql://u:p@h/d\nprepend_sys_path = .\nfile_template = %%(rev)s_%%(slug)s\n'
seed alembic_ini package-resource $'[alembic]\nscript_location = myapp:migrations\n'
seed alembic_ini path-separator $'[alembic]\nscript_location = m\npath_separator = os\nversion_path_separator = space\nversion_locations = a:%(here)s/b\n[DEFAULT]\nscript_location = later\n'
seed alembic_ini strict-duplicate $'[alembic]\nscript_location = a\nScript_Location = b\n'
seed alembic_ini sections $'[core]\nscript_location = core\n[tenant]\nscript_location = tenant\n[alembic]\nscript_location = %(here)s/%%(x)s\n'

# ---- both: constructs Python and ConfigParser treat in ways easy to get wrong (seeded)
/usr/bin/python3 tests/fuzz/alembic_seeds.py "$out" 40

# ---- sql_file: names the tests use, with bodies
sql='CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);'
for name in 0001_init.sql 20250121093000_add_users.sql 10_x_y.sql 18446744073709551615_max.sql \
            18446744073709551616_over.sql 99999999999999999999999_a.sql 01_b.sql 1_.sql 1-a.sql \
            _1_a.sql V1__flyway.sql init.sql 0000_audit.sql; do
    seed sql_file "name-$name" "$name"$'\n'"$sql"
done
seed sql_file directive $'11_index.sql\n-- migrate-then-run: no-transaction\t \r\nCREATE INDEX CONCURRENTLY i ON users (name);\n'
seed sql_file directive-not-first $'2_idx.sql\n\n-- migrate-then-run: no-transaction\nSELECT 1;'
seed sql_file utf8-position $'2_bad.sql\n-- été\nCREATE TABLE café (x int);\nSELEC 1;\n'
seed sql_file do-block $'3_later.sql\nDO $$ BEGIN RAISE NOTICE \'x\'; END $$;\n-- last line is a comment'

# ---- argv: migration commands as the tests write them
i=0
for cmd in "python3 -m alembic upgrade head" $'  flyway   migrate\t' "a 'b c' d" 'a "b \"c\" $d"' 'a\ b c' \
           "'it'\\''s'" "x '' y" '"a\nb"' "echo '&&'" "echo a&&b" 'unterminated "quote' 'trailing\' \
           "alembic upgrade head && uvicorn app" "tool ; rm" "tool 2>&1" \
           "sh -c 'sleep 30; exit 3'" "/usr/bin/python3 -m alembic -c /app/alembic.ini upgrade heads"; do
    seed argv "cmd-$((i++))" "$cmd"
done

# ---- config: command lines and environments (NAME=value words are the environment)
seed config sql-check --sql-dir /m --check --log-format=json
seed config sql-options --sql-dir /m --history-table app.history --baseline 0003 --repair-failed 0004 \
     --allow-out-of-order --migration-lock-timeout 500ms --statement-timeout 2m --migrate-only
seed config alembic --alembic-ini /app/alembic.ini --python /usr/bin/python3 --alembic-baseline ae10 \
     --alembic-version-table app.alembic_version --repair-version-table -- uvicorn app.main:app
seed config migrate-cmd "--migrate-cmd=flyway migrate" --migrate-cwd /app --retries 5 --wait-timeout 1h \
     --wait-max-interval 2s --no-init --signal-group /bin/true
seed config env MTR_SQL_DIR=/m MTR_MIGRATE_ONLY=yes MTR_BACKUP=off MTR_LOG_LEVEL=debug MTR_INIT=auto \
     DATABASE_URL=postgresql://app:hunter2@db:5432/app
seed config env-file MTR_MIGRATE_CMD="alembic upgrade head" MTR_DATABASE_URL_FILE=$'postgresql://u:p@h/d\n' \
     PGPASSWORD_FILE=s3cret -- app
seed config both-url-forms DATABASE_URL=x DATABASE_URL_FILE=y --sql-dir /m --migrate-only
seed config failure-policy --sql-dir /m --on-failure hold --failure-backoff 5s --failure-backoff-max 5m \
     --hold-interval 1m --hold-max-interval 30m --hold-reminder 10m --state-dir /s --status-file /s/st app
seed config backup --migrate-cmd true --backup required --backup-dir /b --backup-keep 0 app
seed config health --health --status-file /tmp/st
seed config bad-value --lock-timeout 5 --stop-timeout 10x --sql-dir /m app
seed config unknown --sql-dir /m --frobnicate app

# ---- redact: URLs, conninfo strings and output lines with passwords
i=0
for line in "postgresql://app:hunter2@db:5432/app" "connecting to postgres://u:xyz@h/d now" \
            "postgresql://u:p%40ss@h/d" "postgresql://u:a@b@h/d" "postgresql://u@h/d" \
            "https://example.com/a:b@c" "host=db password=s3cret user=app" \
            "host=db password = 'a b\\'c' user=app" "PGPASSWORD=abc sh" "?password=abc&sslmode=require" \
            "sqlalchemy.url = postgresql+psycopg2://me:pw@localhost/x" '{"url": "postgresql://a:b@c/d"}' \
            "postgresql://[::1]:5432/db?sslmode=verify-full&sslrootcert=/ca.pem" "host='unterminated" \
            $'\x1b[31mred\r\x7f \xff\xfe bad utf-8 \xe2\x82'; do
    seed redact "line-$((i++))" "$line"
done
seed redact secrets "the password is hunter2! p@ss word appears" hunter2 "p@ss word"

# ---- state: the failure state and status files as the tool writes them
seed state state '{"signature":"70:migrate:42601:0002:00ff","count":3,"first_ms":1763712000123,"last_ms":1763712060456}'
seed state state-count-0 '{"signature":"x","count":0,"first_ms":1,"last_ms":2}'
seed state status-running '{"state":"running","phase":"run","since":"2026-11-21T10:00:00Z","attempt":1,"last_error":null,"pid":1}'
seed state status-holding '{"state":"failed-holding","phase":"migrate","since":"2026-11-21T10:00:00Z","attempt":3,"last_error":"the migration command exited with status 1","pid":4242}'
seed state corrupt '{"state":"running","pid":'

# ---- tool_output: what Alembic, drivers, pg_dump and libpq print
i=0
for line in "INFO  [alembic.runtime.migration] Running upgrade 0003 -> 0004, add embeddings" \
            'sqlalchemy.exc.ProgrammingError: (psycopg2.errors.DuplicateColumn) column "x" of relation "t" already exists' \
            "psycopg.errors.UndefinedTable: relation \"embeddings\" does not exist" \
            "asyncpg.exceptions.DuplicateTableError: relation exists" \
            "server closed the connection unexpectedly" "FATAL:  terminating connection due to administrator command" \
            "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" "pg_dump (PostgreSQL) 17beta1" \
            'connection to server at "db" (10.0.0.2), port 5432 failed: FATAL:  password authentication failed for user "app"' \
            'FATAL:  database "app" does not exist' 'FATAL:  role "nobody" does not exist' \
            'invalid connection option "foo"' "57P03"; do
    seed tool_output "line-$((i++))" "$line"
done

# ---- tool_files: a tool's index byte, a file name, a newline, the file (tests/fuzz/fuzz_tool_files.c)
tool_file() { # NAME INDEX FILE TEXT
    mkdir -p "$out/tool_files"
    { printf "\\$(printf %03o "$2")"; printf '%s\n%s' "$3" "$4"; } >"$out/tool_files/$1"
}
tool_file dbmate 0 20240101000000_users.sql $'-- migrate:up\nCREATE TABLE users (id int);\n-- migrate:down\nDROP TABLE users;\n'
tool_file dbmate-notx 0 2_idx.sql $'-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (c);\n-- migrate:down\n'
tool_file golang 1 1_users.up.sql $'BEGIN;\nCREATE TABLE users (id int);\nCOMMIT;\n'
tool_file goose 2 00001_users.sql $'-- +goose NO TRANSACTION\n-- +goose Up\n-- +goose StatementBegin\nSELECT 1;\n-- +goose StatementEnd\n-- +goose Down\n'
tool_file flyway 3 V1_1__add_email.sql $'\xef\xbb\xbfALTER TABLE users ADD COLUMN email text;\r\n-- done\r\n'
tool_file flyway-repeatable 3 R__view.sql $'CREATE OR REPLACE VIEW v AS SELECT 1;\n'
tool_file prisma 4 migration.sql $'-- CreateTable\nCREATE TABLE "User" (id int);\n'
