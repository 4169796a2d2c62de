"""tierdesk: middleware between customer chat and human agents."""

__version__ = "0.1.0"
