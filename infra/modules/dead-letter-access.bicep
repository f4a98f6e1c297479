// One system topic's right to dead-letter: Storage Blob Data Contributor
// for the topic's system-assigned identity, on the dead-letter container
// only. The event subscription depends on this module, because Event Grid
// needs the role when it dead-letters with the topic identity.

@description('The Function App\'s storage account.')
param storageAccountName string

@description('The dead-letter container.')
param containerName string

@description('Principal id of the system topic\'s identity.')
param principalId string

var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: containerName
}

// Storage Blob Data Contributor on the container: write dead-lettered
// events as blobs; nothing else in the account.
resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, principalId, storageBlobDataContributor)
  scope: container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
