"""The ``netboot`` command line: thin, it parses arguments and calls the packages."""
