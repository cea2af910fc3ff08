from computegrid.cli.main import app

app()
