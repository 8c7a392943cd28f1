"""pyramid_mixer.ranking"""
