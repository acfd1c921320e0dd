# The hardware layer: an ESP32 or the simulation, picked at run time by the platform.
import sys


def pick(config):
    if sys.platform == "esp32":
        import hal_esp32
        return hal_esp32.Hal(config)
    import hal_sim
    return hal_sim.Hal(config)
