"""A served, blind user study of outputs (``clipstyle study``): items from sweep, report or eval folders,
ratings in a database through SQLAlchemy, a FastAPI app for raters and the admin, export and analysis.

Modules: `design` (names, questions, assignment, attention checks), `items` (outputs and stored image
bytes), `schema` (tables, schema version), `create`, `records` (read side), `service` (the API's
operations), `app` (HTTP), `server` (uvicorn), `export`, `analysis` (statistics), `analyze` (files).
Importing this package imports no web or database library; its modules do.
"""
