"""One writer of self-contained HTML reports (jinja2 templates, one stylesheet)."""
