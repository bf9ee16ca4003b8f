"""The supervisor's security console in the admin: charts of what the trail holds and a
per-agent timeline, both limited to the accounts the viewer manages."""
