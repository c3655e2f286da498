"""Screens (views and dialogs) of the console."""
