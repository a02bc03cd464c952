"""The web dashboard (issue 17); ``install_dashboard(app)`` in ``tollway.dashboard.plugin`` mounts it."""
