"""``python -m wanli.migrations``: Alembic's command line, configured in code (there is no alembic.ini).

    python -m wanli.migrations revision --autogenerate -m "add device notes"
    python -m wanli.migrations check            # does METADATA need a new revision?
    python -m wanli.migrations upgrade head     # also: downgrade -1, current, history, stamp REV
    python -m wanli.migrations -x url=postgresql+psycopg://... upgrade head --sql   # SQL for review

``revision`` and ``check`` compare ``METADATA`` with the revisions on a scratch SQLite
database brought to head, so they need no server; new revisions are numbered 0002, 0003...
The other commands act on the service's database (``WANLI_DATABASE_URL``, else SQLite under
``WANLI_DATA_DIR``), or on the one given with ``-x url=URL``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from alembic import command
from alembic.config import CommandLine
from alembic.script import ScriptDirectory

from foundation.db import alembic_config, create_schema, make_engine
from wanli.schema import whole_schema

_COMPARING = (command.revision, command.check)


def main(argv: Sequence[str] | None = None) -> None:
    whole_schema()  # revision and check compare the revisions with every table the service declares
    cli = CommandLine(prog="python -m wanli.migrations")
    options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("a command is needed (see --help)")
    fn = options.cmd[0]
    url = dict(x.split("=", 1) for x in options.x or () if "=" in x).get("url", "")
    with ExitStack() as stack:
        if fn in _COMPARING and not url:
            url = stack.enter_context(_scratch_database_at_head())
        elif not url:
            from wanli.settings import Settings

            url = Settings().resolved_database_url
        config = alembic_config(url=url)
        config.cmd_opts = options
        if fn is command.revision and not options.rev_id:
            options.rev_id = f"{len(list(ScriptDirectory.from_config(config).walk_revisions())) + 1:04d}"
        cli.run_cmd(config, options)


@contextmanager
def _scratch_database_at_head() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="wanli-migrations-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'scratch.db'}"
        engine = make_engine(url)
        try:
            create_schema(engine)
        finally:
            engine.dispose()
        yield url


if __name__ == "__main__":
    main()
