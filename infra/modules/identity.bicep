// The handler's user-assigned identity. The Functions host uses it too, for
// its storage and for the deployment package, so one principal holds every
// role this deployment grants and AZURE_CLIENT_ID names it.

@description('Name of the user-assigned identity.')
@minLength(3)
@maxLength(128)
param name string

@description('Region of the identity.')
param location string

@description('Tags of the identity.')
param tags object

resource handlerIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = handlerIdentity.id
output principalId string = handlerIdentity.properties.principalId
output clientId string = handlerIdentity.properties.clientId
