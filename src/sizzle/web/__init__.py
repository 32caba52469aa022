"""The web app: server-rendered pages (Jinja2, HTMX, server-sent events) on the same services
as the API. Browser sessions live in an HttpOnly cookie; every form that changes something
carries a CSRF token."""
