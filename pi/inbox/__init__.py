"""The Pi's inbox: an SMB drop folder forwarded to the host, verified, nothing lost."""
