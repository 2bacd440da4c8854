"""The program version written into infotexts and reported by the API."""

VERSION = "atelier-0.1.0"
