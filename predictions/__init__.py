"""Predictions: uploads and their results, model versions, upload pages, the prediction API."""
