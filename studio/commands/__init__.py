"""Further ``studio`` commands, one module each (see ``studio.cli.COMMAND_MODULES``)."""
