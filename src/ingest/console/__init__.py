"""The web console (`/`) and the API docs (`/docs`, `/redoc`), served from files inside the package.

The console is plain HTML, CSS and ES modules under `static/`; the documentation viewers are vendored
under `vendor/` (see its README). Nothing is loaded from another host.
"""
