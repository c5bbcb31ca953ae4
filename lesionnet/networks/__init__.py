"""lesionnet.networks"""
