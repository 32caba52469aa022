from sizzle.cli import app

app()
