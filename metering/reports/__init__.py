"""Reports over usage records: spend queries, monthly CSV exports, charts, reconcile,
reprice and backfill. Aggregation happens in SQL (mostly over ``daily_rollups``);
pandas only shapes the (small) aggregated result. Money stays integer nano-USD
until the edge, where ``format_usd`` turns it into decimal strings."""
