"""The sweep: config, stages per factor, finishing (selection, export, report) and the Prefect flow."""
