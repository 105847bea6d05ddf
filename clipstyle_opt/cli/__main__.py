"""``python -m clipstyle_opt.cli`` is the same as the ``clipstyle`` command."""
from .main import main

main()
