"""The web dashboard (issue 17), mounted by ``tollway.dashboard.plugin.install_dashboard``."""
