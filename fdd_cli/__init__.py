"""The `fdd` command line: thin typer commands over fdd_core; `fdd run` starts the Prefect flow.

main.py holds the app and its commands (run, eval, check-data, benchmarks), teacher.py the `fdd teacher`
sub-app (serve, solve), options.py the options every command shares and errors.py how a user's mistake
ends (one `error:` line, exit 2). The library never imports this package.
"""
