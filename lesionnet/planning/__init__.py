"""lesionnet.planning"""
