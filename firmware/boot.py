# edgepair node: runs first on every reset of the ESP32 (then main.py).
# Nothing here may fail: a broken boot.py locks the board out of its own REPL.
import gc

gc.collect()
