"""The centre's report page (HTML + a vendored Chart.js, no internet needed)."""
