"""Energy control: the Pi carries out the host's plan over Modbus TCP, safe by default."""
