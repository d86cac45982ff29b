"""The dashboard's static files, installed as a resource package."""
