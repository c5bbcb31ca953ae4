"""lesionnet.preprocessing"""
