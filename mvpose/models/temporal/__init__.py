"""Temporal models: lift 2D sequences to 3D or refine 3D sequences.

Forward contract of every temporal model: ``model(x)`` with ``x (B, T, J, C)`` (C = 2 lifting,
3 refinement) returns ``(B, T_out, J, 3)``; each model documents ``T_out`` and its receptive field.
"""
