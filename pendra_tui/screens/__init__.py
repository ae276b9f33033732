"""The app's screens: the five setup steps, the dashboard and its dialogs."""
