"""One writer of self-contained HTML reports: jinja2 templates (``templates/``), one stylesheet, embedded images.

:mod:`faceops.reports.writer` renders the templates; :mod:`faceops.reports.page` is the pipeline steps' page.
The EDA page (``faceops data report``) and the monitor's page use the same writer and stylesheet.
"""

from faceops.reports.page import write_page
from faceops.reports.writer import data_uri, render, write

__all__ = ["data_uri", "render", "write", "write_page"]
