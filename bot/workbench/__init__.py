"""The trainer workbench: a local web app for improving the assistant."""
