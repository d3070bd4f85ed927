"""Account drivers beneath the router's interface (`router.driver`), registered as the
`byoa.drivers` entry points (pyproject.toml) that the `driver` setting names."""
