"""``python -m clipstyle_opt`` is the same as the ``clipstyle`` command."""
from .cli.main import main

main()
