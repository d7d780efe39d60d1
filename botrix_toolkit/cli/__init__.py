"""The ``botrix`` command: ``main.py`` builds the parser, one module per subcommand."""
