"""Shared code of the digits pipeline: params, IDX data, model, evaluation.

Stage scripts in ``stages/`` import these modules; only ``model`` imports TensorFlow.
"""
