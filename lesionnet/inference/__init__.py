"""lesionnet.inference"""
