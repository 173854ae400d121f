"""The schema's history as Alembic revisions (``versions/``), applied by ``foundation.db.create_schema``.

``python -m wanli.migrations`` is Alembic's command line for them; ``env.py`` says how to add one.
"""
