"""The node agent: the supervisor process, its maintenance services and the CLI."""
