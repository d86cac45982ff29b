"""The dashboard's Jinja templates, installed as a resource package."""
