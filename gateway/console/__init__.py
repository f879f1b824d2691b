"""The ops console: server-rendered pages under ``/console`` over the admin API's services."""
