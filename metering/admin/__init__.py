"""The admin HTTP API under ``/admin/v1/`` (README, Admin API): ``api.AdminApi`` is the
ASGI app the gateway hands those paths to; each resource's routes are a table
(``Endpoint``) in its own module; the operations they call are ``metering.operations``,
the ones the CLI calls."""
