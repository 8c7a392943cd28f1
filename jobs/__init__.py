"""pyramid_mixer.jobs"""
