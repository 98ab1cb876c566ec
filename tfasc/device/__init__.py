"""Deployment truth on the device: the bundle compiled into firmware for emulated Cortex-M cores.

``tfasc.device`` builds TFLite Micro + CMSIS-NN (and, for log-mel models, the CMSIS-DSP front end)
for a target (:mod:`tfasc.device.targets`) with ``arm-none-eabi-gcc``, runs the firmware under
``qemu-system-arm`` with semihosting, and compares every output with the Python TFLite Micro
interpreter. Imported lazily by the export; nothing here runs at import time.
"""
