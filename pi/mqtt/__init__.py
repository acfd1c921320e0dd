"""``edgepair pi run mqtt``: the public files as retained MQTT state and Home Assistant discovery."""
