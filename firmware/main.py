# edgepair node firmware: the same files run on an ESP32 and on the MicroPython unix port.
# ESP32: runs after boot.py with config.json beside it.
# Unix port: micropython -X heapsize=100k main.py [CONFIG]
import sys

import node

node.main(sys.argv[1] if len(sys.argv) > 1 else "config.json")
