"""Seeing the metrics: panel definitions (the Grafana dashboard is generated from them) and
`modelpilot report`, a self-contained HTML file with the same panels."""
