// Translation unit that owns the Beast/Asio precompiled header.
