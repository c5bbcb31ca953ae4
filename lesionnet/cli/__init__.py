"""lesionnet.cli"""
