"""Template adapters: Jinja2 sandboxed rendering and the folder / zip format of template sets."""
